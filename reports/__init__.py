"""Report writers; output goes to reports/out/ (git-ignored). See reports/SCHEMA.md."""
