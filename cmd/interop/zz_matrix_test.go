package interop_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestZZMatrix runs last (file and declaration order) and logs the matrix
// of every (peer, direction, feature) recorded by the tests before it.
func TestZZMatrix(t *testing.T) {
	table := matrix.Table("")
	t.Logf("interop matrix (%d rows):\n%s", matrix.Len(), table)
	if strings.Contains(table, "| FAIL |") {
		t.Errorf("the matrix has failing rows")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if matrix.Len() > 0 && testingVerbose() {
		fmt.Printf("interop matrix:\n%s", matrix.Table(""))
	}
	os.Exit(code)
}

func testingVerbose() bool { return testing.Verbose() }
