module mcall.local/pause

go 1.24
