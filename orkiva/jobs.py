"""Jobs log with the request id of the request that caused them.

django-q2's `pre_enqueue` signal stores `orkiva.context.job_context()` (the current request id)
in the task package; `pre_execute` binds it in the qcluster worker, with the job's function
name as the operation, and `post_execute_in_worker` unbinds it. A job enqueued outside any
request (the scheduled sweep) gets a fresh request id. Nothing for task authors to do; code
that hands work to something other than django-q2 uses job_context()/bind_job_context().
"""
from __future__ import annotations

import contextvars

from orkiva.context import (
    JOB_CONTEXT_KEY,
    accept_request_id,
    begin_call,
    bind_request_id,
    end_call,
    job_context,
    reset_request_id,
)

_bound: dict[str, tuple[contextvars.Token, contextvars.Token]] = {}


def job_operation(func) -> str:
    name = func if isinstance(func, str) else f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}"
    return "job:" + str(name).rsplit(".", 1)[-1]


def on_pre_enqueue(sender, task: dict, **kwargs) -> None:
    task.setdefault(JOB_CONTEXT_KEY, job_context())


def on_pre_execute(sender, func, task: dict, **kwargs) -> None:
    request_id = accept_request_id((task.get(JOB_CONTEXT_KEY) or {}).get("request_id"))
    _bound[task["id"]] = (bind_request_id(request_id), begin_call(operation=job_operation(task.get("func", func))))


def on_post_execute(sender, func, task: dict, **kwargs) -> None:
    tokens = _bound.pop(task["id"], None)
    if tokens is not None:
        rid_token, call_token = tokens
        try:
            end_call(call_token)
            reset_request_id(rid_token)
        except ValueError:  # bound in another context (cannot happen in django-q2's worker loop)
            pass


def connect() -> None:
    from django_q import signals

    signals.pre_enqueue.connect(on_pre_enqueue, dispatch_uid="orkiva.jobs.pre_enqueue")
    signals.pre_execute.connect(on_pre_execute, dispatch_uid="orkiva.jobs.pre_execute")
    signals.post_execute_in_worker.connect(on_post_execute, dispatch_uid="orkiva.jobs.post_execute")
