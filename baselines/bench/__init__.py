"""The codec bench: codecs x qualities x images -> the SQLite results store (``cloud3d bench``).

One module per step; :func:`baselines.bench.runner.run_bench` ties them together (and is
exported by the stage's face: ``from baselines import run_bench``):

* :mod:`baselines.bench.tasks`: parse the ``--codec`` specs, plan one task per
  (image, codec, quality);
* :mod:`baselines.bench.estimate`: the plan and its CPU-time estimate;
* :mod:`baselines.bench.worker`: what a worker does with a task;
* :mod:`baselines.bench.executor`: local process pool or Dask, the tasks in flight, the watchdog;
* :mod:`baselines.bench.store`: the SQLite results file;
* :mod:`baselines.bench.runner`: resume, run, record.
"""
