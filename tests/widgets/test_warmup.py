"""The dashboard's background warm-up: jobs run in priority order on one thread, a tab opened first goes first,
a failing job does not stop the others, and a waiting tab becomes its lab once its jobs are done."""

import threading
import time

import panel as pn
import pytest

from widgets.warmup import Job, WarmUp


def _recording(order, key, gate=None, fail=False):
    def fn():
        if gate is not None:
            gate.wait(5)
        order.append(key)
        if fail:
            raise RuntimeError(f"{key} broke")
    return fn


def test_jobs_run_in_order_and_an_opened_tab_goes_first():
    order, gate = [], threading.Event()
    w = WarmUp([Job("a", "job a", _recording(order, "a", gate)), Job("b", "job b", _recording(order, "b")),
                Job("c", "job c", _recording(order, "c")), Job("d", "job d", _recording(order, "d"))],
               needs={"A": ["a"], "D": ["c", "d"]})
    w.start()
    time.sleep(0.05)                 # "a" is running (held by the gate)
    w.prioritize("D")                # the user opens tab D: c and d jump the queue, a finishes first
    assert not w.ready("A") and not w.ready("D")
    done, total, lines = w.describe("D")
    assert (done, total) == (0, 2) and all("queued" in line for line in lines)
    assert "so far" in w.describe("A")[2][0]
    gate.set()
    assert w.wait(timeout=10)
    assert order == ["a", "c", "d", "b"]
    assert w.ready("A") and w.ready("D") and w.ready("no such tab")
    snap = w.snapshot()
    assert snap["all_ready"] and snap["tabs"] == {"A": True, "D": True}
    assert snap["jobs"]["c"]["state"] == "done" and snap["since_start_s"] > 0


def test_a_failing_job_is_reported_and_the_rest_still_run():
    order = []
    w = WarmUp([Job("x", "job x", _recording(order, "x", fail=True)), Job("y", "job y", _recording(order, "y"))],
               needs={"T": ["x", "y"]})
    reports = []
    jobs = w.run_all(lambda job, done, total: reports.append((job.key, job.state, done, total)))
    assert order == ["x", "y"]
    assert reports == [("x", "failed", 1, 2), ("y", "done", 2, 2)]
    assert jobs[0].error == "RuntimeError: x broke"
    assert w.ready("T")              # a failed job counts as finished: the tab shows its own error
    assert "✗ job x: RuntimeError: x broke" in w.describe("T")[2]
    w.run_all()                      # nothing left to run: no job runs twice
    assert order == ["x", "y"]
    with pytest.raises(ValueError, match="unknown warm-up jobs"):
        WarmUp([Job("x", "x", lambda: None)], needs={"T": ["nope"]})


def test_a_waiting_tab_shows_progress_then_becomes_the_lab():
    from widgets.dashboard import _WaitingTab

    gate = threading.Event()
    w = WarmUp([Job("slow", "loading something slow", gate.wait)], needs={"Lab": ["slow"]})
    built = []

    def factory():
        built.append(1)
        return pn.pane.Markdown("the lab", css_classes=["the-lab"])

    tab = _WaitingTab("Lab", factory, w)
    assert not tab.live and built == []
    assert "loading something slow" in tab._status.object and "0 of 1" in tab._status.object
    assert tab._bar.value == 0
    w.start()
    gate.set()
    assert w.wait("Lab", timeout=10)
    assert tab.poll() and tab.live and built == [1]
    assert tab.__panel__()[0].object == "the lab"
    tab.poll()
    assert built == [1]              # built once


def test_every_tab_needs_known_jobs_and_the_dashboard_builds_in_the_background(monkeypatch):
    import widgets.dashboard as dashboard
    from widgets.dashboard import JOBS, NEEDS, TABS, create_app, make_warmup

    titles = [title for title, _ in TABS]
    assert titles[0] == "Overview" and len(set(titles)) == len(titles) == 5
    assert JOBS[0][0] == "model" and len({key for key, _, _ in JOBS}) == len(JOBS)  # the model first, keys unique
    make_warmup()                    # validates NEEDS against JOBS
    assert {key for key, _, _ in JOBS} >= {k for keys in NEEDS.values() for k in keys}
    # served: every tab starts as a waiting tab that polls the shared warm-up (here one whose jobs wait on a gate,
    # so that the test process does not load the model in the background)
    gate = threading.Event()
    w = WarmUp([Job(key, label, gate.wait) for key, label, _ in JOBS], NEEDS)
    monkeypatch.setattr(dashboard, "shared_warmup", lambda: w)
    app = create_app(background=True)
    tabs = app[1]
    # every tab shows its waiting panel (a Viewer's layout is what Tabs holds)
    assert all(t[0].css_classes == ["wb-waiting"] for t in tabs.objects)
    assert "getting ready" in tabs.objects[0][0][0].object
    tabs.active = 2                  # the user opens "KV cache": its jobs go to the front of the queue
    assert w._queue[0] in NEEDS[TABS[2][0]]
    gate.set()
    assert w.wait(timeout=10)
