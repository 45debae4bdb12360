package interop_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain runs the tests, then prints the matrix of every (peer,
// direction, feature) they recorded (with -v, or when a row failed), and
// fails the run if a row failed, whatever order the tests ran in.
func TestMain(m *testing.M) {
	code := m.Run()
	if matrix.Len() == 0 {
		os.Exit(code)
	}
	table := matrix.Table("")
	failed := strings.Contains(table, "| FAIL |")
	if failed || testing.Verbose() {
		fmt.Printf("interop matrix (%d rows):\n%s", matrix.Len(), table)
	}
	if failed {
		fmt.Println("FAIL: the interop matrix has failing rows")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
