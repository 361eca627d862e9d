"""The VP-SDE score behavior model (seed 002), split as score_sde: ``sde`` (the SDE's math),
``network`` (the noise-prediction network), ``sampling`` (PC, probability-flow ODE and
DPM-Solver samplers), ``likelihood`` (log p by the probability-flow ODE) and ``model``
(:class:`~behavior_models.score.model.ScoreBehaviorModel`, the contract's backend)."""
