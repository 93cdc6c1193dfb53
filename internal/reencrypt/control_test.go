package reencrypt

import (
	"context"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

func TestEffectivePace(t *testing.T) {
	for _, c := range []struct{ pace, ceiling, want int }{
		{0, 500, 0}, {200, 500, 200}, {1_000_000, 500, 500}, {300, 0, 300}, {-5, 500, 0},
	} {
		if got := EffectivePace(c.pace, c.ceiling); got != c.want {
			t.Errorf("EffectivePace(%d, %d) = %d, want %d", c.pace, c.ceiling, got, c.want)
		}
	}
}

// A pause holds the reader, polling Control, and moves the configured
// pace's clock forward by the time held (no burst on resume); a cancelled
// run stops while paused.
func TestControlPause(t *testing.T) {
	polls := 0
	r := &runner{cfg: rekey.ReencryptSpec{RowsPerSecond: 500}, job: Job{Control: func(context.Context) (bool, int) {
		polls++
		return polls <= 3, 0
	}}}
	var g gate
	t0 := time.Now()
	paced := t0
	if halt, err := r.control(context.Background(), context.Background(), &g, 0, &paced); halt || err != nil {
		t.Fatalf("halt %v, err %v", halt, err)
	}
	if polls != 4 || paced.Sub(t0) != 3*ControlPoll {
		t.Fatalf("want 4 polls and the clock moved by 3 polls' time, got %d polls, %v", polls, paced.Sub(t0))
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.job.Control = func(context.Context) (bool, int) { cancel(); return true, 0 }
	if halt, err := r.control(ctx, context.Background(), &g, 0, &paced); !halt || err == nil {
		t.Fatalf("cancelled while paused: want halt with the context's error, got %v %v", halt, err)
	}
}
