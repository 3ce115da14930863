# Time the R reference fits on the same CSVs the Python benchmarks use.
#
# Usage (from anywhere; paths are resolved relative to the repository):
#   Rscript benchmarks/time_r.R [--n N] [--warmup W] [--default]
#                               [--ref tests/fixtures/reference.json] [case ...]
#
# For each case named on the command line (default: every case in
# reference.json) it reads tests/fixtures/<data> (pois_ri / pois_rs are
# copies of sklearn_glmm/data/app_logins.csv; "app_logins" is also accepted
# as a case name and times the tutorial Poisson random-intercept fit on that
# file directly), evaluates the case's stored "call" text with `d` bound to
# the data W times untimed (default 1; loads/compiles code) and N times timed
# (default 5), and prints one JSON object {case: median_elapsed_seconds} to
# stdout.  --default times lme4 cases with the default-control call
# ("lme4_default$call") instead of the tight-tolerance one.
# Progress goes to stderr.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

script_path <- local({
  a <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(a)) normalizePath(sub("^--file=", "", a[1])) else normalizePath("benchmarks/time_r.R", mustWork = FALSE)
})
repo <- dirname(dirname(script_path))

args <- commandArgs(trailingOnly = TRUE)
n_rep <- 5L
warmup <- 1L
use_default <- FALSE
ref_path <- file.path(repo, "tests", "fixtures", "reference.json")
cases <- character()
i <- 1
while (i <= length(args)) {
  a <- args[i]
  if (a %in% c("--n", "-n")) {
    n_rep <- as.integer(args[i + 1]); i <- i + 2
  } else if (startsWith(a, "--n=")) {
    n_rep <- as.integer(sub("^--n=", "", a)); i <- i + 1
  } else if (a == "--warmup") {
    warmup <- as.integer(args[i + 1]); i <- i + 2
  } else if (startsWith(a, "--warmup=")) {
    warmup <- as.integer(sub("^--warmup=", "", a)); i <- i + 1
  } else if (a == "--ref") {
    ref_path <- args[i + 1]; i <- i + 2
  } else if (startsWith(a, "--ref=")) {
    ref_path <- sub("^--ref=", "", a); i <- i + 1
  } else if (a == "--default") {
    use_default <- TRUE; i <- i + 1
  } else if (a %in% c("-h", "--help")) {
    cat("Rscript benchmarks/time_r.R [--n N] [--warmup W] [--default] [--ref PATH] [case ...]\n")
    quit(status = 0)
  } else {
    cases <- c(cases, a); i <- i + 1
  }
}
if (is.na(n_rep) || n_rep < 1) stop("--n must be a positive integer")

ref <- fromJSON(ref_path, simplifyVector = FALSE)
fixture_dir <- dirname(ref_path)
all_cases <- names(ref)[vapply(ref, function(v) is.list(v) && !is.null(v$engine), logical(1))]

# Extra case: the tutorial fit on the shipped dataset itself.
ref[["app_logins"]] <- list(
  engine = "lme4",
  call = "glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson)",
  data_path = file.path(repo, "sklearn_glmm", "data", "app_logins.csv"),
  groups = list("user_id")
)

if (length(cases) == 0) cases <- all_cases
unknown <- setdiff(cases, names(ref))
if (length(unknown)) stop("unknown case(s): ", paste(unknown, collapse = ", "))

read_case_data <- function(path, groups) {
  d <- read.csv(path, check.names = FALSE, stringsAsFactors = FALSE)
  for (g in groups) d[[g]] <- factor(d[[g]])
  d
}

out <- list()
for (cs in cases) {
  v <- ref[[cs]]
  path <- if (!is.null(v$data_path)) v$data_path else file.path(fixture_dir, v$data)
  d <- read_case_data(path, unlist(v$groups))
  call_text <- v$call
  if (use_default && !is.null(v$lme4_default$call)) call_text <- v$lme4_default$call
  env <- new.env(parent = globalenv())
  env$d <- d
  expr <- parse(text = call_text)
  run <- function() suppressWarnings(suppressMessages(eval(expr, envir = env)))
  for (k in seq_len(warmup)) run()
  tt <- vapply(seq_len(n_rep), function(k) unname(system.time(run())["elapsed"]), numeric(1))
  out[[cs]] <- signif(median(tt), 6)
  message(sprintf("%-18s median %.4f s over %d runs  [%s]", cs, out[[cs]], n_rep, call_text))
}

cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
