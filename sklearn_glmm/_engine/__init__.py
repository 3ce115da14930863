"""The maths of a GLMM fit: families and links, the Laplace / AGQ objective, the
conditional modes, the factorisations and the outer optimisation.

Imports neither scikit-learn nor pandas; the estimators (:mod:`sklearn_glmm._base`)
build its inputs and read its results.
"""
