"""Programs that use phonebridge's REST API as any client would, through HTTP only:
`check_file` is `phonebridge check-file` (a CSV in, a check job, a progress bar, the results CSV
out). Its decisions are pure, in service/domain/check_file.py."""
