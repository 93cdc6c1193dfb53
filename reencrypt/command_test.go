package reencrypt

func runCodecHelper(mode string) int { return 1 }
