"""The one part of the build that pyproject.toml can't state yet without an experimental table."""
from setuptools import Extension, setup

# One small C routine for object columns (see its header). Optional: where it
# can't be compiled, cellcache is the same pure-Python package, giving the same
# keys, only slower on the first hash of such a column.
setup(ext_modules=[Extension("cellcache.fingerprint._atoms", ["cellcache/fingerprint/_atoms.c"], optional=True)])
