"""Files the package reads and writes: atomic writes, the restricted unpickler.

| module | concept |
|---|---|
| `atomic` | whole-or-nothing writes of files and folders |
| `unpickling` | the one restricted unpickler for pickled dataset files |
| `locking` | one writer per folder: an exclusive lock naming its holder |
"""
