"""The offline RL core every algorithm shares, written once.

* :mod:`rl.core.buffer`: the dataset on the device and uniform minibatches drawn there;
* :mod:`rl.core.networks`: a vectorised Q ensemble, deterministic / tanh-Gaussian / Gaussian
  actors, polyak target updates;
* :mod:`rl.core.rewards`: the documented reward conventions;
* :mod:`rl.core.behavior`: opening ``--behavior`` (a sample cache or a model directory);
* :mod:`rl.core.evaluation`: rollouts in the environment Minari recovers, normalised scores;
* :mod:`rl.core.trainer`: the step loop, logging, evaluation, checkpoints and resume.
"""
