"""Experiments: a recipe of teachers, methods and seeds, trained, evaluated and reported.

- :mod:`.recipe`: the recipe schema (``Recipe``, ``MethodSpec``, ``EvalSpec``) and loading a file.
- :mod:`.plan`: the runs a recipe needs, teachers reused from checkpoints, ``finished``.
- :mod:`.runner`: ``run_experiment`` (training, also under torchrun) and ``evaluate_run``.
- :mod:`.archive`: the records of finished runs copied into a folder to commit (``reuse`` it).
- :mod:`.report`: mean ± std over seeds; CSV, Markdown, ``summary.json`` and plotly plots.
- :mod:`.significance`: each row against the recipe's baseline: mean difference, 95 % t-interval
  and p-value, paired by seed where the runs differ only in the method (else Welch).
- :mod:`.job`: the ``experiment`` job kind (``ExperimentJob``, ``run_experiment_job``).
"""
