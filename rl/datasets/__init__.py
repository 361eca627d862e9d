"""Built-in datasets: real Minari datasets generated from gymnasium-robotics PointMaze.

``make_dataset(name)`` builds a recipe named in :mod:`behavior_models.data.aliases` (the CLI
calls it for any recipe name not yet on disk). See :mod:`rl.datasets.recipes` for the list.
"""

from rl.datasets.contamination import contaminate
from rl.datasets.recipes import PointMazeRecipe, make_dataset, parse_recipe_name, reference_scores

__all__ = ["PointMazeRecipe", "contaminate", "make_dataset", "parse_recipe_name", "reference_scores"]
