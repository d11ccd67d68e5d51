"""The lifecycle: one table of states and moves, and only a Controller changes a run's state."""
import ast
from pathlib import Path

import pytest

from core.control import FINISHED, MOVES, Controller, RunError, RunState, reachable

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_names_every_state_and_leads_nowhere_else():
    assert set(MOVES) == set(RunState)
    assert all(targets <= set(RunState) for targets in MOVES.values())
    # every state but the first is reached from a queued run, and a run that failed or diverged stays so
    assert reachable(RunState.QUEUED) | {RunState.QUEUED} == set(RunState)
    assert MOVES[RunState.FAILED] == MOVES[RunState.DIVERGED] == set()
    assert {s for s in RunState if s.finished} == FINISHED


@pytest.mark.parametrize("start", list(RunState))
def test_a_controller_makes_exactly_the_moves_of_the_table(start):
    for target in RunState:
        control = Controller(start)
        if target in MOVES[start]:
            control.move(target)
            assert control.state == target
        else:
            with pytest.raises(RunError):
                control.move(target)
            assert control.state == start


def test_a_mirror_may_skip_states_but_not_leave_the_table():
    control = Controller(RunState.READY)
    control.follow(RunState.PAUSED)  # ready -> running -> paused between two reports
    assert control.state == RunState.PAUSED
    control.follow(RunState.FAILED, "training stopped: RuntimeError: boom")
    with pytest.raises(RunError):
        control.follow(RunState.RUNNING)  # a failed run never trains again
    assert control.state == RunState.FAILED and "boom" in control.error


def test_a_stop_made_here_wins_over_a_report_that_crossed_it():
    control = Controller(RunState.RUNNING)
    control.stop()
    control.follow(RunState.RUNNING)  # sent by the child before it heard of the stop
    assert control.state == RunState.STOPPED


def test_commands_that_the_state_does_not_allow_say_why():
    control = Controller(RunState.READY)
    control.start(0, 10)
    control.diverged("training diverged at step 3")
    with pytest.raises(RunError, match="diverged at step 3"):
        control.start(3, 10)
    with pytest.raises(RunError, match="recorded run cannot train"):
        Controller(RunState.RECORDED).start(0)
    done = Controller(RunState.RUNNING)
    assert done.steps_now(10, 5) == 5 and done.target is None
    done.target = 10
    assert done.steps_now(10, 5) == 0 and done.state == RunState.DONE


def assignments_to_state(path: Path) -> list[str]:
    """`x.state = ...` (or state in a tuple assignment) anywhere in a module, as 'file:line'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
            if any(isinstance(t, ast.Attribute) and t.attr == "state" for t in flat):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_nothing_but_the_controller_assigns_a_state():
    places = [p for folder in ("core", "dashboard") for p in (ROOT / folder).rglob("*.py")]
    assigned = [where for path in places for where in assignments_to_state(path)]
    assert assigned and all(where.startswith("control.py:") for where in assigned), assigned
    control = ROOT / "core" / "control.py"
    tree = ast.parse(control.read_text())
    controller = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Controller")
    inside = {f"control.py:{n.lineno}" for n in ast.walk(controller) if hasattr(n, "lineno")}
    assert set(assigned) <= inside, set(assigned) - inside
