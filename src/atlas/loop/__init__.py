"""The whole ATLaS loop against running services: a local fleet, the stages, the demo's report.

``fleet`` starts/stops the three services (``Fleet``) or connects to running ones (``connect``);
``stages`` drives one job per stage (experts → selection → training → evaluation) and returns a
``StageResult``; ``report`` turns the results into the comparison table, chart and provenance chain.
``cli`` adds ``atlas up`` and ``atlas down``.
"""
