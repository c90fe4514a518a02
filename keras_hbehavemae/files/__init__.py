"""Files the package reads and writes: atomic writes, and pickled or array files read safely.

| module | concept |
|---|---|
| `atomic` | whole-or-nothing writes of files and folders |
| `unpickling` | the one restricted unpickler and its allow-lists |
| `numpy_rebuild` | the checked stand-ins that rebuild NumPy arrays, dtypes and scalars |
| `npy` | `.npy` and `.npz` files, headers checked against the data before anything is allocated |
| `pickle_files` | pickled data files: `.npy` object arrays, pickles, joblib files |
| `locking` | one writer per folder: an exclusive lock naming its holder |
"""
