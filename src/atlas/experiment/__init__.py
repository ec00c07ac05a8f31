"""`atlas experiment`: the paper's ablation (critical vs all vs random vs non-critical steps) in miniature.

``config`` (the YAML schema), ``harness`` (conditions x seeds through the real services, resumable),
``stats`` (success rates and rewards with 95% intervals), ``report`` (results.json, table, chart).
"""
