"""Training, the project's training layer: stage 1 (`harivo.train.stage1`, the shapes world's T2I model,
`python -m harivo.train.t2i`) and stage 2 (`harivo.train.stage2`, HARIVO on the frozen T2I, `python -m harivo.train`,
its loop in `harivo.train.loop`), with the losses (`losses`, `trs`), the T2I model builders (`t2i_models`) and the
helpers both stages share (`utils`). Nothing outside this folder, the benchmarks and the tests imports it.
"""
