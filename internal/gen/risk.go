package gen

import (
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// The demo risk model. It is not a model of anything: it draws scores so that
// the shares of levels look like a real targeting system's (about 8% HIGH,
// 20% MEDIUM) and names indicators that fit the declaration.
const (
	ModelName    = "borderlink-demo-risk"
	ModelVersion = "1.3.0"

	highScore   = 0.7
	mediumScore = 0.4
)

func (g *generator) riskAssessment(d *blv1.Declaration, f facts, seq int) *blv1.RiskAssessment {
	r := g.rng
	accepted := d.GetAcceptanceTime().AsTime()

	// Most declarations come from a clean population; a minority from a
	// suspicious one. Strong signals push the score up a little.
	var s float64
	// Mixture tuned so that, with the pushes below, about 8% score HIGH and
	// 20% MEDIUM.
	if r.Float64() < 0.11 {
		s = beta(r, 5, 2)
	} else {
		s = beta(r, 1.7, 5)
	}
	strong := 0
	for _, b := range []bool{f.undervalued, f.massOdd, f.sensitive && f.routed} {
		if b {
			strong++
		}
	}
	s = round3(1 - (1-s)*math.Pow(0.75, float64(strong)))
	s = math.Min(math.Max(s, 0), 1)

	level, n := blv1.RiskLevel_RISK_LEVEL_LOW, 0
	switch {
	case s >= highScore:
		level, n = blv1.RiskLevel_RISK_LEVEL_HIGH, 2+r.IntN(3)
	case s >= mediumScore:
		level, n = blv1.RiskLevel_RISK_LEVEL_MEDIUM, 1+r.IntN(2)
	case r.Float64() < 0.35:
		n = 1
	}

	return &blv1.RiskAssessment{
		Id:            fmt.Sprintf("%s-RA-%04d-%06d", g.home, accepted.Year(), seq),
		DeclarationId: d.GetId(),
		Score:         s,
		Level:         level,
		Indicators:    g.indicators(f, level, n, s),
		ModelName:     ModelName,
		ModelVersion:  ModelVersion,
		AssessedTime:  timestamppb.New(accepted.Add(time.Duration(20+r.IntN(1200)) * time.Second)),
	}
}

// indicators draws n distinct indicators, favouring those the facts support,
// with weights that add up to the score: each is its share of the score.
func (g *generator) indicators(f facts, level blv1.RiskLevel, n int, score float64) []*blv1.RiskIndicator {
	r := g.rng
	supported := map[string]bool{
		"R-ROUTE":        f.routed,
		"R-UNDERVAL":     f.undervalued,
		"R-HS-SENSITIVE": f.sensitive,
		"R-NEW-TRADER":   f.newTrader,
		"R-ORIGIN":       f.originOdd,
		"R-DOC-MISSING":  f.docMissing,
		"R-MASS":         f.massOdd,
	}
	chosen := make([]bool, len(indicatorKinds))
	var out []*blv1.RiskIndicator
	var total float64
	for range n {
		i := weighted(r, len(indicatorKinds), func(i int) float64 {
			k := indicatorKinds[i]
			switch {
			case chosen[i]:
				return 0
			case k.code == "R-WATCHLIST":
				if level == blv1.RiskLevel_RISK_LEVEL_HIGH {
					return 0.5
				}
				return 0
			case supported[k.code]:
				return 6
			default:
				return 1
			}
		})
		chosen[i] = true
		w := uniform(r, 0.5, 1.5)
		total += w
		out = append(out, &blv1.RiskIndicator{Code: indicatorKinds[i].code, Description: indicatorKinds[i].description, Weight: w})
	}
	for _, ind := range out {
		ind.Weight = round3(ind.Weight / total * score)
	}
	slices.SortStableFunc(out, func(a, b *blv1.RiskIndicator) int {
		switch {
		case a.Weight > b.Weight:
			return -1
		case a.Weight < b.Weight:
			return 1
		}
		return 0
	})
	return out
}
