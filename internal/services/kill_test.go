package services

import "syscall"

func syscallKill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }
