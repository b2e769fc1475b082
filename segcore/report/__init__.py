"""The results report: every evaluated cell in one tidy table, tables over seeds, plots, one HTML page.

Inputs (all written by earlier stages):

* ``metrics.json`` of the evaluate stages. MRI (``medseg evaluate``): ``domain``, ``dataset``,
  ``split``, ``method``, ``budget``, ``seed``, ``classes``, ``summary`` (``dice_mean``,
  ``dice_<class>``, ``dice_per_class`` ...), ``n_subjects`` and ``per_subject``. Remote sensing
  (``rs evaluate``): the same run keys plus ``variant`` (the fusion), ``class_names`` and a
  ``summary`` of ``miou``, ``iou_<class>``, ``precision``, ``recall``, ``f1``, ``overall_accuracy``.
* ``overlay.npz`` beside a ``metrics.json`` (a few test slices or tiles with truth and prediction).
* Lightning ``logs/metrics.csv`` of the fine-tuning and pretraining stages, and the ``train.json``
  beside each (a fine-tuning run's validation history and selected step).
* ``train.json`` of the pretraining stages (per-step losses and the chance loss).
* Snakemake ``benchmark:`` TSV files (time and memory per job).

One concern per module:

* :mod:`~segcore.report.domains`: what each domain shows, how budgets and methods are named and ordered;
* :mod:`~segcore.report.tidy`: metrics.json files → the tidy table;
* :mod:`~segcore.report.statistics`: statistics over seeds and paired comparisons;
* :mod:`~segcore.report.tables`: the text tables (Markdown, HTML, CSV);
* :mod:`~segcore.report.overlays`, :mod:`~segcore.report.logs`: the other inputs;
* :mod:`~segcore.report.pretext`: pretraining losses against chance, the collapse mark;
* :mod:`~segcore.report.resources`: time and memory per workflow rule;
* :mod:`~segcore.report.plots` (matplotlib), :mod:`~segcore.report.figures`: the figures;
* :mod:`~segcore.report.page`: the HTML page;
* :mod:`~segcore.report.cli`: the stage (``segpretrain report``, alias ``medseg report``, ``rs report``).

Nothing is imported here, so that ``import segcore.report.tidy`` does not load matplotlib.
What every table and plot shows, and the statistics behind them: docs/report.md.
"""
