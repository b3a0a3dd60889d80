"""The audit engine: one skeleton, two tasks.

``prepare`` turns a configuration into a prepared audit (model, data, attacks, defense);
``skeleton`` is the loop every task shares (schedule, resume, atomic writes), which
``classification`` and ``segmentation`` specialise; ``record`` and ``summary`` write
what results.json says besides the numbers. The engine never prints and never renders.
See ARCHITECTURE.md for the data flow.

The one step routine through which every adversarial image is made is
:mod:`auditor.steps`, beside the engine rather than in it: the evaluation add-ons and
adversarial training call it too, and the engine calls them. Import from the modules
(``auditor.engine.prepare``, ``auditor.engine.classification``, ...).
"""
