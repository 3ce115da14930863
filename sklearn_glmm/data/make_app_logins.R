# Regenerate app_logins.csv: the daily app-logins simulation from the
# GLMM tutorial (50 users x 30 days, Poisson counts with a user random
# intercept).  Run from the repository root:
#   Rscript sklearn_glmm/data/make_app_logins.R
# Reference fit (as printed in the tutorial):
#   glmer(logins ~ day_centered + (1 | user_id), family = poisson)
#   AIC 5290.3, (Intercept) 0.737944, day_centered -0.009100, user SD 0.433

# Set seed for reproducibility
set.seed(789)

# Parameters
n_users <- 50  # Number of users
n_days <- 30   # Days per user
n_total <- n_users * n_days

# User IDs
user_id <- rep(1:n_users, each = n_days)

# Day (centered)
day <- rep(1:n_days, times = n_users)
day_centered <- day - mean(day)

# Random intercepts for users (varying baseline engagement)
user_random_intercept <- rnorm(n_users, mean = 0, sd = 0.5)
user_random_effect <- rep(user_random_intercept, each = n_days)

# Fixed effects
beta0 <- 0.8    # Baseline log count
beta1 <- -0.01  # Time trend (slight decline)

# Linear predictor
log_lambda <- beta0 + beta1 * day_centered + user_random_effect

# Expected counts
lambda <- exp(log_lambda)

# Simulate Poisson counts
logins <- rpois(n_total, lambda = lambda)

# Create dataframe
app_data <- data.frame(
  user_id = factor(user_id),
  day = day,
  day_centered = day_centered,
  logins = logins
)

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else {
  if (file.exists("sklearn_glmm/data")) "sklearn_glmm/data/app_logins.csv" else "app_logins.csv"
}
write.csv(app_data, out, row.names = FALSE)
