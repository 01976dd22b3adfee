"""The package list behind pyproject.toml's one import name.

The folders ``circuits/``, ``dictionaries/`` and ``editing/`` stay at the top of the repository
and install as ``sparse_circuits.circuits``, ``sparse_circuits.dictionaries`` and
``sparse_circuits.editing``; setuptools cannot find packages through a ``package-dir`` mapping,
so the list is built here from the folders.
"""

from setuptools import find_packages, setup

MAPPED = ("circuits", "dictionaries", "editing")

packages = ["sparse_circuits"]
for folder in MAPPED:
    packages += [f"sparse_circuits.{folder}"]
    packages += [f"sparse_circuits.{folder}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir={"sparse_circuits": "sparse_circuits"}
    | {f"sparse_circuits.{folder}": folder for folder in MAPPED},
)
