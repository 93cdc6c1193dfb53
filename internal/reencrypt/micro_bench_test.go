package reencrypt

import (
	"testing"

	"github.com/rekeyhq/rekey"
)

// BenchmarkProcessRow is the client-side cost of one row of two
// AES-256-GCM base64 columns: open with the old key, seal with the new
// one, verify, encode.
func BenchmarkProcessRow(b *testing.B) {
	cfg := normalized(rekey.ReencryptSpec{Columns: []string{"t.a", "t.b"}})
	oldK, newK := newKey32(b, "base64"), newKey32(b, "base64")
	kr, _, err := newRing(cfg, []rekey.Value{oldK, newK}, []string{"old", "new"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	kr.sealWith = 1
	c := mustCipher(b, cfg, oldK)
	v1 := encrypt(b, c, "patient12345@example.com")
	v2 := encrypt(b, c, "900-12-3456")
	r := &runner{kr: kr}
	rows := make([]row, 2000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bt := &batch{rows: rows}
		for j := range rows {
			rows[j] = row{old: [][]byte{v1, v2}}
		}
		w := newWorker()
		if err := r.processBatch(bt, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2000), "ns/row")
}
