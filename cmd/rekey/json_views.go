package main

import (
	"math"
	"runtime/debug"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// The --json documents of history, rotate, recover, rollback and version:
// what the text output says, with snake_case keys (the domain's types are
// not tagged for output, and some are stored). None holds a value.

// historyJSON is one version as `rekey history --json` lists it.
type historyJSON struct {
	Version     int               `json:"version"`
	Label       string            `json:"label"`
	CreatedAt   time.Time         `json:"created_at"`
	Source      string            `json:"source"`
	Fingerprint string            `json:"fingerprint"`
	RotationID  string            `json:"rotation_id,omitempty"`
	Note        string            `json:"note,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
}

func historyView(vs []rkapp.HistoryVersion) []historyJSON {
	out := make([]historyJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, historyJSON{Version: v.N, Label: string(v.Label), CreatedAt: v.CreatedAt.UTC(), Source: string(v.Source),
			Fingerprint: v.Fingerprint, RotationID: v.RotationID, Note: v.Note, Attributes: v.Attrs})
	}
	return out
}

// rotationJSON is the result of `rekey rotate --json` (and rollback): the
// plan with --dry-run, the rotation's journal once it ran.
type rotationJSON struct {
	Environment string `json:"environment"`
	Mode        string `json:"mode"`
	// Outcome: planned (--dry-run), nothing (--due or --all found nothing),
	// or the rotation's end state: done, rolled-back, failed.
	Outcome    string              `json:"outcome"`
	RotationID string              `json:"rotation_id,omitempty"`
	Secrets    []rotatedSecretJSON `json:"secrets"`
	Steps      []stepJSON          `json:"steps,omitempty"`
	Error      string              `json:"error,omitempty"`
	Started    time.Time           `json:"started,omitzero"`
	Ended      time.Time           `json:"ended,omitzero"`
}

type rotatedSecretJSON struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind,omitempty"`
	FromVersion int      `json:"from_version,omitempty"`
	ToVersion   int      `json:"to_version"`
	Bits        int      `json:"bits,omitempty"`
	Encoding    string   `json:"encoding,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Targets     []string `json:"targets,omitempty"`
	Derived     []string `json:"derived,omitempty"`
	Plan        []string `json:"plan,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	// Reencrypt is, in a dry run's plan of a data key, the estimate of
	// its re-encryption per table (reencrypt.EstimateRun).
	Reencrypt []tableEstimateJSON `json:"reencrypt,omitempty"`
}

// tableEstimateJSON is the estimate of one table's re-encryption: rows,
// bytes and sample measured; wal_* modelled; min_time_ms a lower bound
// (rows ÷ rows_per_second, 0 without a ceiling); read_crypto_rows_per_second
// an upper bound of the speed (the writes are not sampled).
type tableEstimateJSON struct {
	Table                   string       `json:"table"`
	Rows                    int64        `json:"rows"`
	HeapBytes               int64        `json:"heap_bytes"`
	IndexBytes              int64        `json:"index_bytes"`
	Indexes                 int          `json:"indexes"`
	EncryptedIndexes        int          `json:"encrypted_indexes"`
	SampleRows              int          `json:"sample_rows"`
	AvgRowBytes             float64      `json:"avg_row_bytes"`
	WriteFraction           float64      `json:"write_fraction"`
	HOTFraction             float64      `json:"hot_fraction"`
	FullPageWrites          bool         `json:"full_page_writes"`
	EstimatedWALBytes       int64        `json:"estimated_wal_bytes"`
	WALModel                walModelJSON `json:"wal_model"`
	ReadCryptoRowsPerSecond float64      `json:"read_crypto_rows_per_second"`
	RowsPerSecond           int          `json:"rows_per_second"`
	MinTimeMS               int64        `json:"min_time_ms"`
}

type walModelJSON struct {
	FullPageImages int64 `json:"full_page_images"`
	Tuples         int64 `json:"tuples"`
	IndexEntries   int64 `json:"index_entries"`
	IndexSplits    int64 `json:"index_splits"`
}

func estimateView(est *reencrypt.Estimate) []tableEstimateJSON {
	if est == nil {
		return nil
	}
	out := []tableEstimateJSON{}
	for _, t := range est.Tables {
		out = append(out, tableEstimateJSON{Table: t.Table, Rows: t.Rows, HeapBytes: t.HeapBytes, IndexBytes: t.IndexBytes,
			Indexes: t.Indexes, EncryptedIndexes: t.EncryptedIndexes, SampleRows: t.SampleRows, AvgRowBytes: round1(t.AvgRowBytes),
			WriteFraction: round2(t.WriteFraction), HOTFraction: round2(t.HOTFraction), FullPageWrites: est.FullPageWrites,
			EstimatedWALBytes: t.WAL.Total(), WALModel: walModelJSON{t.WAL.FullPageImages, t.WAL.Tuples, t.WAL.IndexEntries, t.WAL.IndexSplits},
			ReadCryptoRowsPerSecond: math.Round(t.ReadCryptoRowsPerSecond), RowsPerSecond: est.RowsPerSecond, MinTimeMS: t.MinTime.Milliseconds()})
	}
	return out
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round2(f float64) float64 { return math.Round(f*100) / 100 }

type stepJSON struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Outcome string    `json:"outcome,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// planView is a plan as JSON: the secrets, their versions and the lines of
// the step table that apply to each.
func planView(p *engine.Plan, outcome string) *rotationJSON {
	out := &rotationJSON{Environment: p.Env, Mode: string(p.Mode), Outcome: outcome, Secrets: []rotatedSecretJSON{}}
	for _, s := range p.Secrets {
		out.Secrets = append(out.Secrets, rotatedSecretJSON{Name: s.Name, Kind: string(s.Kind), FromVersion: s.FromVersion, ToVersion: s.ToVersion,
			Bits: s.Generator.Bits(), Encoding: string(s.Generator.Encoding), Targets: s.Targets, Derived: s.Derived, Plan: s.Steps, Warnings: s.Warnings})
	}
	return out
}

// resultView adds what a run did to its plan: the rotation, its journal,
// the new versions' fingerprints.
func resultView(p *engine.Plan, res *engine.Result) *rotationJSON {
	out := planView(p, "")
	r := res.Rotation
	out.RotationID, out.Outcome, out.Error = r.ID, string(r.State), r.Error
	out.Started, out.Ended = r.Started.UTC(), r.Ended.UTC()
	if res.RolledBack && r.State == rekey.StateRunning {
		out.Outcome = string(rekey.StateRolledBack)
	}
	for i, s := range out.Secrets {
		if v, ok := res.Versions[s.Name]; ok {
			out.Secrets[i].ToVersion, out.Secrets[i].Fingerprint = v.N, v.Fingerprint
		}
	}
	for _, st := range r.Steps {
		out.Steps = append(out.Steps, stepJSON{Name: st.Name, Started: st.Started.UTC(), Ended: st.Ended.UTC(), Outcome: st.Outcome, Detail: st.Detail})
	}
	return out
}

// rollbackJSON is the result of `rekey rollback --json`.
type rollbackJSON struct {
	Name        string `json:"name"`
	FromVersion int    `json:"from_version"`
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
	// Exposed says why the value was exposed, when --force published it anyway.
	Exposed string `json:"exposed,omitempty"`
}

// recoverJSON is the result of `rekey recover --json`.
type recoverJSON struct {
	Environment string      `json:"environment"`
	Completed   []string    `json:"completed"`
	RolledBack  []string    `json:"rolled_back"`
	Probe       []probeJSON `json:"probe,omitempty"`
	Drift       []driftJSON `json:"drift"`
	Consistent  bool        `json:"consistent"`
}

type probeJSON struct {
	Name     string `json:"name"`
	Accepted int    `json:"accepted_version"`
	Current  int    `json:"current_version"`
	Repaired bool   `json:"repaired"`
}

type driftJSON struct {
	Target  string `json:"target"`
	Key     string `json:"key"`
	Missing bool   `json:"missing"`
}

func recoverView(r *rkapp.Recovered) *recoverJSON {
	rep := r.Report
	out := &recoverJSON{Environment: r.Env, Completed: nonNil(rep.RolledForward), RolledBack: nonNil(rep.RolledBack), Drift: []driftJSON{}}
	for _, p := range r.Probe {
		out.Probe = append(out.Probe, probeJSON{Name: p.Name, Accepted: p.Accepted, Current: p.Current, Repaired: p.Repaired})
	}
	for _, d := range rep.Drift {
		out.Drift = append(out.Drift, driftJSON{Target: d.Target, Key: d.Key, Missing: d.Missing})
	}
	out.Consistent = len(out.Drift) == 0
	return out
}

func nonNil(s []string) []string { return append([]string{}, s...) }

// versionJSON is `rekey version --json`: the build information.
type versionJSON struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

func versionView() versionJSON {
	out := versionJSON{Version: "(unknown)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	out.Version, out.GoVersion = bi.Main.Version, bi.GoVersion
	if out.Version == "" {
		out.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}
