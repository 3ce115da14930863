# Time ordinal::clmm on the rows benchmarks/run_ordinal.py fits (the R side of that script).
#
# Usage: Rscript benchmarks/time_ordinal.R CASES.json N
# CASES.json maps a case name to {"csv": path, "call": R call text with `d` bound to the
# data}; each call is evaluated once untimed and N times timed. Prints one JSON object
# {case: median elapsed seconds} to stdout.
suppressPackageStartupMessages({
  library(ordinal)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
cases <- fromJSON(args[1])
n_rep <- as.integer(args[2])
out <- list()
for (name in names(cases)) {
  d <- read.csv(cases[[name]]$csv)
  d$y <- factor(d$y, ordered = TRUE)
  d$g <- factor(d$g)
  expr <- parse(text = cases[[name]]$call)
  invisible(eval(expr))
  times <- replicate(n_rep, system.time(eval(expr))[["elapsed"]])
  out[[name]] <- median(times)
  message(name, ": ", signif(out[[name]], 3), " s")
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA))
