"""The robustness harness behind ``benchmarks/robustness.py`` (issue 16).

Modules, one idea each:

* :mod:`.guard`: run one case under a time and memory budget and classify its outcome
  (accepted, clean error, traceback, hang, over budget); worker processes so that a crash
  is counted instead of ending the run;
* :mod:`.streams`: adversarial ``.c3d`` streams (mutations with the CRC recomputed, forged
  headers, hostile LZMA strings) decoded in-process;
* :mod:`.files`: forged checkpoints and archives, corrupt, oversized and 16-bit images,
  hostile manifests, each fed to the library call that reads it;
* :mod:`.cli_slice`: a sample of all those files through the real ``cloud3d`` command
  in subprocesses (exit status 1 and one ``error:`` line);
* :mod:`.killat`: run ``cloud3d`` and SIGKILL it at the N-th call of a chosen filesystem
  function (``os.replace``, ``os.link``, ``os.fsync``...);
* :mod:`.kills`: kill ``capture``, ``split`` and ``bench`` at random moments and at chosen
  calls, resume them, and compare with an uninterrupted run.
"""
