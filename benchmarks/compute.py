"""The compute benchmark, ``lorentzcv.bench`` (see its docstring): ``python benchmarks/compute.py ARGS`` is
``python -m lorentzcv.bench ARGS`` (and ``lorentzcv bench ARGS`` prints it as tables)."""

from lorentzcv.bench import main

if __name__ == "__main__":
    main()
