"""The scoring service: the one place where a part's verdict is decided.

* :mod:`services.scoring.predictor`: :class:`~services.scoring.predictor.Predictor`, one object
  per model version (threshold, deciding feedback scorer, audit share, detector), and its
  ``decide`` method that turns images into decisions.
* :mod:`services.scoring.feedback`: the active feedback scorer and its decisions.
* :mod:`services.scoring.explanations` and :mod:`services.scoring.defect_library`: the grounded
  explanation decided with each verdict, and the confirmed defects it compares a part with.
* :mod:`services.scoring.runtime`: which runtime (torch or ONNX) loads a version's detector.

The rule itself (flagged when the score reaches the threshold) is
:func:`adcore.verdicts.verdict_for`. Storing a decision is :mod:`services.inspection`'s job.
Nothing is imported here, so that ``services.scoring.runtime`` stays light for the pages.
"""
