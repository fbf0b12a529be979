"""trustgrpo inside other trainers.

==================================  ===============================================================
module                              what it gives
==================================  ===============================================================
:mod:`trustgrpo.integrations.trl`   Hugging Face TRL's ``GRPOTrainer``: :func:`~.trl.audited`
                                    reward functions and :class:`~.trl.TrustCallback` write the
                                    same ledger as a native run (extra ``[trl]``)
==================================  ===============================================================

Nothing is imported here: an integration loads its trainer's package only when it is imported.
"""
