# A test-only Ansible callback: at the end of a run, the slowest tasks and
# how long each took (wall clock, all hosts together), so the system test
# can say where a rollout spends its time. Enabled by tests/system/ansible.sh
# through ANSIBLE_CALLBACK_PLUGINS and ANSIBLE_CALLBACKS_ENABLED.
from __future__ import annotations

import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timer
type: aggregate
short_description: prints the slowest tasks of a run
description: Prints the ten slowest tasks (wall clock) when the run ends.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._times = []
        self._current = None

    def _stop(self):
        if self._current is not None:
            name, t0 = self._current
            self._times.append((time.monotonic() - t0, name))
            self._current = None

    def _start(self, name):
        self._stop()
        self._current = (name, time.monotonic())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._start("handler: " + task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._stop()
        total = sum(t for t, _ in self._times)
        self._display.display("TASK TIMES (slowest first; %.1f s in tasks):" % total)
        for t, name in sorted(self._times, reverse=True)[:12]:
            self._display.display("  %6.2f s  %s" % (t, name))
