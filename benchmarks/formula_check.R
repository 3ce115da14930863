# The R side of formula_check.py: fits every case of cases.json (in the working
# directory) with glmer, glmmTMB or clmm, as the case says, and writes r_results.json: the
# fixed-effect names (and the zero-inflation formula's), estimates, log-likelihood and
# link-scale predictions on the first rows as new data, or the error R gave.
suppressMessages({library(lme4); library(glmmTMB); library(ordinal); library(jsonlite)})
cases <- fromJSON("cases.json", simplifyDataFrame = FALSE)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
out <- list()
for (i in seq_along(cases)) {
  cs <- cases[[i]]
  d <- read.csv(cs$data)
  res <- tryCatch({
    form <- as.formula(cs$formula)
    # a family with its link, "binomial(link = 'probit')", is R code
    fam <- if (grepl("(", cs$family, fixed = TRUE)) eval(parse(text = cs$family)) else cs$family
    if (cs$engine == "clmm") {
      d$r <- factor(d$r, ordered = TRUE)
      # (at its default tolerances clmm can end with a log-likelihood 1e-3 above the one
      # a tighter run converges to, the library's: its conditional modes not settled)
      m <- clmm(form, data = d, control = clmm.control(gradTol = 1e-8))
      beta <- m$beta
      r_converged <- m$optRes$convergence == 0
    } else if (cs$engine == "glmer") {
      m <- suppressWarnings(suppressMessages(glmer(form, d, family = fam, control = ctrl, nAGQ = cs$agq)))
      beta <- fixef(m)
    } else {
      zi <- if (is.null(cs$zi)) ~0 else as.formula(cs$zi)
      m <- suppressWarnings(glmmTMB(form, d, family = fam, ziformula = zi))
      beta <- fixef(m)$cond
      # (NB2 with theta of 1e11 at "false convergence": a log-likelihood 0.016 above its
      # own Poisson fit's, the rounding of the NB2 density there)
      r_converged <- m$fit$convergence == 0
    }
    # predictions on the first rows as new data: with the groups' random effects and
    # without (the transforms' and factors' codings of the fit applied to other rows)
    nd <- d[seq_len(min(25, nrow(d))), ]
    if (cs$engine == "clmm") nd <- NULL  # (clmm's fits have no predict method)
    link <- if (is.null(nd)) NULL else
      tryCatch(unname(predict(m, newdata = nd, type = "link")), error = function(e) NULL)
    pop <- if (is.null(nd)) NULL else
      tryCatch(unname(predict(m, newdata = nd, re.form = NA, type = "link")),
               error = function(e) NULL)
    list(names = names(beta), fixef = unname(beta), loglik = as.numeric(logLik(m)),
         r_converged = if (cs$engine == "glmer") TRUE else r_converged,
         zi_names = if (cs$engine == "glmmTMB") names(fixef(m)$zi) else NULL,
         link = link, population = pop)
  }, error = function(e) list(error = conditionMessage(e)))
  out[[i]] <- c(cs, res)
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE), "r_results.json")
