package main

import (
	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// reencrypt --json: one document on stdout per run, snake_case keys.
//
//	rekey reencrypt --json            {"finished": [NAME...]}
//	rekey reencrypt --verify --json   {"secrets": [{secret, keys, columns, neither, ...}]}
//	rekey reencrypt --rehearse --json {"rehearsals": [{secret, method, ...}]}

type reencryptFinishedView struct {
	Finished []string `json:"finished"`
}

type keyCountView struct {
	Secret  string               `json:"secret"`
	Keys    []countedKeyView     `json:"keys"`
	Columns []columnCountView    `json:"columns"`
	Neither int64                `json:"neither"`
	Pending *countedKeyTotalView `json:"pending,omitempty"`
	// NeedsPrevious: values still under the previous key (it must be kept).
	NeedsPrevious int64 `json:"needs_previous"`
}

type countedKeyView struct {
	Version int    `json:"version"`
	Label   string `json:"label"`
	Values  int64  `json:"values"`
}

type countedKeyTotalView struct {
	Version int   `json:"version"`
	Values  int64 `json:"values"`
}

type columnCountView struct {
	Table   string  `json:"table"`
	Column  string  `json:"column"`
	ByKey   []int64 `json:"by_key"` // in the order of keys
	Neither int64   `json:"neither"`
	Empty   int64   `json:"empty"`
}

func keyCountJSON(k rkapp.KeyCount) keyCountView {
	v := keyCountView{Secret: k.Spec.Name, Columns: []columnCountView{}, Neither: k.Counts.Neither()}
	for i, ck := range k.Keys {
		n := k.Counts.ByKey(i)
		v.Keys = append(v.Keys, countedKeyView{Version: ck.N, Label: string(ck.Label), Values: n})
		switch ck.Label {
		case rekey.LabelPending:
			v.Pending = &countedKeyTotalView{Version: ck.N, Values: n}
		case rekey.LabelPrevious:
			v.NeedsPrevious = n
		}
	}
	for _, c := range k.Counts.Columns {
		v.Columns = append(v.Columns, columnCountView{Table: c.Table, Column: c.Column, ByKey: c.ByKey, Neither: c.Neither, Empty: c.Empty})
	}
	return v
}

type rehearsalView struct {
	Secret      string   `json:"secret"`
	Method      string   `json:"method"`
	Admin       bool     `json:"admin"`
	CopyMS      int64    `json:"copy_ms"`
	RunMS       int64    `json:"run_ms"`
	Rows        int64    `json:"rows"`
	Reencrypted int64    `json:"reencrypted"`
	Empty       int64    `json:"empty"`
	Failed      int64    `json:"failed"`
	Failures    []string `json:"failures,omitempty"`
	// WALBytes is measured during the run on the copy (the whole server's;
	// -1: not measured); EstimatedWALBytes is the model's, on the source
	// (-1: no estimate), whose figures per table are in Estimate.
	WALBytes          int64               `json:"wal_bytes"`
	EstimatedWALBytes int64               `json:"estimated_wal_bytes"`
	Estimate          []tableEstimateJSON `json:"estimate,omitempty"`
	Tables            []tableGrowthView   `json:"tables"`
	Error             string              `json:"error,omitempty"`
}

type tableGrowthView struct {
	Table       string `json:"table"`
	BeforeBytes int64  `json:"before_bytes"`
	AfterBytes  int64  `json:"after_bytes"`
}

func rehearsalJSON(spec *rekey.Spec, reh *reencrypt.Rehearsal, err error) rehearsalView {
	v := rehearsalView{Secret: spec.Name, Tables: []tableGrowthView{}, WALBytes: -1, EstimatedWALBytes: -1}
	if err != nil {
		v.Error = err.Error()
	}
	if reh == nil {
		return v
	}
	v.Method, v.Admin = reh.Method, reh.Admin
	v.CopyMS, v.RunMS = reh.CopyTime.Milliseconds(), reh.RunTime.Milliseconds()
	v.WALBytes = reh.WALBytes
	if reh.Estimate != nil {
		v.EstimatedWALBytes, v.Estimate = reh.Estimate.WALBytes(), estimateView(reh.Estimate)
	}
	if res := reh.Result; res != nil {
		v.Rows, v.Reencrypted, v.Empty, v.Failed = res.Rows, res.Reencrypted, res.Empty, res.Failed
		for _, f := range res.Failures {
			v.Failures = append(v.Failures, f.String())
		}
	}
	for _, g := range reh.Tables {
		v.Tables = append(v.Tables, tableGrowthView{Table: g.Table, BeforeBytes: g.Before, AfterBytes: g.After})
	}
	return v
}
