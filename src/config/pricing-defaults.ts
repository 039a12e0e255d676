/**
 * The price table `pricing` starts from: CodeBuild on-demand list prices in USD per build
 * minute. Only the prices this project could check against a public source are here (see the
 * README, "Cost of a job"): on-demand Linux x86 in us-east-1, BUILD_GENERAL1_SMALL $0.005,
 * MEDIUM $0.01, LARGE $0.02 per minute, as listed in May 2026. Everything else has no default
 * price: the job's log then says that its price is not in the table, rather than guess.
 */
export const DEFAULT_PRICES_AS_OF = '2026-05';

export const DEFAULT_PRICE_TABLE = {
  'us-east-1': {
    LINUX_CONTAINER: {
      BUILD_GENERAL1_SMALL: 0.005,
      BUILD_GENERAL1_MEDIUM: 0.01,
      BUILD_GENERAL1_LARGE: 0.02,
    },
  },
} as const;
