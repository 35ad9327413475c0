"""CPython's own ``concurrent.futures`` process-pool tests, run against ``Pool``.

``adapter.py`` points the standard library's test classes at ``Pool`` and
lists every test that is skipped or expected to fail, with the reason;
``run.py`` runs them per start method with a per-test time limit. Not
collected by pytest (no ``test_*.py`` here): ``.ci/run`` runs it on Python
3.13, whose ``test`` package ships the tests.
"""
