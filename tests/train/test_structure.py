"""The shape of ``lorentzcv.train``: the loop knows no task, no task imports another, and every task the config
schema accepts has a registered :class:`~lorentzcv.train.engine.Task`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lorentzcv.train as T
from lorentzcv.train.schema import TASKS as CONFIG_TASKS

PKG = Path(T.__file__).parent
#: The modules of each task (a task may be split over several modules).
TASK_MODULES = {"classification": {"classification"}, "metric": {"metric", "metric_optim", "retrieval"}}
#: Modules every task and the loop may use; they import no task and not the loop.
SHARED = {"checkpoint", "common", "config", "distributed", "recorder", "rundir", "schedule", "schema"}


def _train_imports(module: str) -> set[str]:
    """The ``lorentzcv.train`` modules that ``module`` imports (relative imports, at any depth in the file)."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


def test_every_module_is_accounted_for():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert modules == SHARED | {"engine", "tasks"} | set().union(*TASK_MODULES.values())


@pytest.mark.parametrize("module", sorted(SHARED | {"engine"}))
def test_the_loop_and_shared_modules_import_no_task(module):
    tasks = set().union(*TASK_MODULES.values()) | {"tasks"}
    assert not _train_imports(module) & tasks
    if module in SHARED:
        assert "engine" not in _train_imports(module)


@pytest.mark.parametrize("task", sorted(TASK_MODULES))
def test_no_task_imports_another(task):
    others = set().union(*(m for t, m in TASK_MODULES.items() if t != task)) | {"tasks"}
    for module in TASK_MODULES[task]:
        assert not _train_imports(module) & others, module


def test_every_config_task_has_a_registered_task():
    assert set(T.TASKS) == set(CONFIG_TASKS)
    for name, task in T.TASKS.items():
        assert task.name == name and issubclass(task.trainer, T.Engine) and task.trainer.task_name == name
    assert T.TASKS["classification"].trainer is T.Trainer and T.TASKS["metric"].trainer is T.MetricTrainer


def test_an_unknown_task_in_a_checkpoint_config_is_a_config_error():
    from lorentzcv.train.tasks import task_of

    with pytest.raises(T.ConfigError, match="unknown task 'segmentation'; expected one of classification, metric"):
        task_of({"task": "segmentation"})
