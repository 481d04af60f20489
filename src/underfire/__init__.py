"""underfire: security of interpretable deep learning systems.

Attacks on classifiers and on interpreters, differentiable interpreters, defenses as
training objectives, diagnosis, and reproductions of the papers listed in the README.
"""

from underfire._version import __version__

__all__ = ["__version__"]
