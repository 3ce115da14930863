# Time lme4 / glmmTMB on the scale workloads of benchmarks/workloads.py.
#
# Usage (run_scale.py writes the job file and calls this):
#   Rscript benchmarks/time_scale.R JOBS.json
#
# JOBS.json is a list of objects {name, engine, csv, groups, call, n, warmup}. For each
# job the CSV is read (grouping columns made factors), the call is evaluated with `d`
# bound to the data `warmup` times untimed and `n` times timed (elapsed seconds of
# system.time around the call alone: reading the data is not timed), and one JSON line
# {name, engine, times, median, loglik, df, messages} is printed to stdout as soon as the
# job is done, so that a long run that is interrupted keeps what it measured. Progress
# goes to stderr.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript time_scale.R JOBS.json")
jobs <- fromJSON(args[1], simplifyVector = FALSE)

fit_messages <- function(fit) {
  if (inherits(fit, "merMod")) {
    m <- c(fit@optinfo$conv$lme4$messages, unlist(fit@optinfo$warnings))
  } else if (inherits(fit, "glmmTMB")) {
    m <- c(if (!isTRUE(fit$sdr$pdHess)) "non-positive-definite Hessian",
           if (fit$fit$convergence != 0) fit$fit$message)
  } else {
    m <- character()
  }
  as.character(m)
}

for (job in jobs) {
  d <- read.csv(job$csv, check.names = FALSE, stringsAsFactors = FALSE)
  for (g in unlist(job$groups)) d[[g]] <- factor(d[[g]])
  env <- new.env(parent = globalenv())
  env$d <- d
  expr <- parse(text = job$call)
  run <- function() suppressWarnings(suppressMessages(eval(expr, envir = env)))
  fit <- NULL
  for (k in seq_len(job$warmup)) fit <- run()
  times <- numeric()
  for (k in seq_len(job$n)) {
    tt <- system.time(fit <- run())
    times <- c(times, unname(tt["elapsed"]))
    message(sprintf("  %-18s %-9s run %d: %.3f s", job$name, job$engine, k, tt["elapsed"]))
  }
  ll <- logLik(fit)
  out <- list(name = job$name, engine = job$engine, times = times, median = median(times),
              loglik = as.numeric(ll), df = attr(ll, "df"), messages = fit_messages(fit),
              call = job$call)
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n", sep = "")
  flush(stdout())
}
