"""The plugin contract and the pieces methods share: `Method` (base), add-ons and their composition (addon),
named expansions of add-ons (expansion), the name registry (registry), training adversaries, the meta-learning
look-ahead, held-out batches, sample-weight conventions, step bounds and the official codes' epoch counter."""
