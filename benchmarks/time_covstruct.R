# The glmmTMB side of run_covstruct.py: times each structured model on the CSV given.
# Usage: Rscript benchmarks/time_covstruct.R data.csv N
# Prints one JSON object {model: {seconds: median elapsed, loglik: ...}} on its last line.
suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
n <- as.integer(args[2])
d$dayf <- factor(d$day)
d$dayn <- numFactor(d$day)
models <- list(
  pois_ar1 = list(count ~ day + x + ar1(0 + dayf | id), poisson),
  bin_ar1 = list(bin ~ day + x + ar1(0 + dayf | id), binomial),
  pois_cs = list(count ~ day + x + cs(0 + dayf | id), poisson),
  pois_ou = list(count ~ day + x + ou(dayn + 0 | id), poisson)
)
out <- list()
for (nm in names(models)) {
  f <- models[[nm]]
  m <- glmmTMB(f[[1]], data = d, family = f[[2]])  # warm-up, untimed
  times <- sapply(seq_len(n), function(i) {
    system.time(m <- glmmTMB(f[[1]], data = d, family = f[[2]]))[["elapsed"]]
  })
  out[[nm]] <- list(seconds = median(times), loglik = as.numeric(logLik(m)))
}
cat(toJSON(out, auto_unbox = TRUE, digits = 10), "\n")
