package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// scales says how big each shape is generated: a scale for all, a scale
// per shape (-scale pgbench=30,dominant=16), or a size every shape is
// scaled to (-size 1GB).
type scales struct {
	all     int
	byShape map[string]int
	size    int64 // bytes; 0: none
}

// parseScale reads -scale: a number for every shape, name=number pairs for
// some, or both ("10,dominant=16").
func parseScale(s string) (scales, error) {
	sc := scales{all: 10, byShape: map[string]int{}}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, num, named := strings.Cut(part, "=")
		if !named {
			num = name
		}
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil || n < 1 {
			return sc, fmt.Errorf("-scale %s: give a scale of 1 or more, for every shape (-scale 30) or per shape (-scale pgbench=30,dominant=16)", part)
		}
		if !named {
			sc.all = n
			continue
		}
		name = strings.TrimSpace(name)
		if !slices.Contains(shapeNames(), name) {
			return sc, fmt.Errorf("-scale %s: no shape %q; pick from %s", part, name, strings.Join(shapeNames(), ", "))
		}
		sc.byShape[name] = n
	}
	return sc, nil
}

// parseSize reads -size: a number of bytes with a unit, such as 600MB or
// 1.5GB (powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	if s == "" {
		return 0, nil
	}
	unit := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"G", 1 << 30}, {"M", 1 << 20}} {
		if strings.HasSuffix(s, u.suffix) {
			s, unit = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.n
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || unit == 1 || f <= 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("-size %s: give a size with its unit, such as 600MB or 1GB", s)
	}
	return int64(f * float64(unit)), nil
}

// of is the scale to generate a shape at: its own, else the one that makes
// it about -size, else the scale for all.
func (sc scales) of(sh shape) int {
	if n, ok := sc.byShape[sh.name]; ok {
		return n
	}
	if sc.size > 0 {
		return max(1, int(math.Round((float64(sc.size)/(1<<20)-sh.fixed)/sh.perScale)))
	}
	return sc.all
}
