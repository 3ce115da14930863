# The R side of power_throughput.py: simulate-and-refit with lme4::glmer, as simr's
# powerSim does, for the same design (people x waves, a two-arm treatment, a random
# intercept). Prints one JSON line: refits, seconds.
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
n_id <- as.integer(args[1]); n_wave <- as.integer(args[2]); n_rep <- as.integer(args[3])
set.seed(1)
d <- data.frame(id = factor(rep(seq_len(n_id), each = n_wave)),
                time = rep(seq_len(n_wave) - 1, n_id))
d$treatment <- as.numeric(as.integer(d$id) > n_id / 2)
b <- rnorm(n_id)
d$y <- rbinom(nrow(d), 1, plogis(-0.5 - 0.2 * d$time + log(0.6) * d$treatment + b[d$id]))
fit <- glmer(y ~ time + treatment + (1 | id), data = d, family = binomial)
ys <- simulate(fit, nsim = n_rep)
t0 <- proc.time()[["elapsed"]]
p <- numeric(n_rep)
for (k in seq_len(n_rep)) {
  f <- suppressMessages(suppressWarnings(refit(fit, ys[[k]])))
  p[k] <- coef(summary(f))["treatment", "Pr(>|z|)"]
}
sec <- proc.time()[["elapsed"]] - t0
cat(sprintf('{"refits": %d, "seconds": %.3f}\n', n_rep, sec))
