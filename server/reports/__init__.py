"""The daily summaries for staff: `/reports/` lists the days, `/reports/<date>/summary.{html,pdf,png,json}`."""
