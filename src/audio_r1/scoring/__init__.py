"""Every judgement of a model's reply, each defined once.

* `answers`: is the answer right? (normalisation of options, letters, numbers and words)
* `think`: is the think block well formed? (the RL format reward and the verifier's structure check)
* `claims`: the acoustic claims a reasoning chain makes, checked against the truth
* `measurements`: that truth measured from a waveform, for audio without generation parameters
* `grounding`: is a chain grounded in the sound? (the README's rate, evaluation, MGRD, RL)
* `faithfulness`: does a chain's answer follow from its own stated values?
* `verifier`: MGRD's three filters: correct, grounded, coherent
* `rewards`: RL's verified reward (correctness, format, and an optional grounding term)

These modules depend on the model's chat format and on nothing above it; they take a
`data.manifest.Item` but never import `data`, `train`, `eval` or `serve`.
"""
