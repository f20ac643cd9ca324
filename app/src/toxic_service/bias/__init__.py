"""Unintended identity bias: a generated template set (templates.py) and the metrics on it (metrics.py).

In the spirit of Dixon et al. 2018 ("Measuring and Mitigating Unintended Bias
in Text Classification"), with the per-identity AUCs of Borkan et al. 2019
("Nuanced Metrics for Measuring Unintended Bias with Real Data for Text
Classification"). `toxic-service evaluate --bias` runs both through the
service's own Scorer.
"""
