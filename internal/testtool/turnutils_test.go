package testtool

import "testing"

func TestParseUclient(t *testing.T) {
	const ok = `5: : start_mclient: msz=2, tot_send_msgs=31, tot_recv_msgs=31, tot_send_bytes ~ 5270, tot_recv_bytes ~ 5270
6: : start_mclient: tot_send_msgs=100, tot_recv_msgs=100
6: : Total transmit time is 6
6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)`
	const lossy = `21: : start_mclient: tot_send_msgs=1000, tot_recv_msgs=990
21: : Total lost packets 10 (1.000000%), total send dropped 0 (0.000000%)`
	const refused = "0: : error 486 ()\n0: : error 486 ()"
	const progressOnly = "5: : start_mclient: msz=2, tot_send_msgs=31, tot_recv_msgs=31, tot_send_bytes ~ 5270"
	tests := []struct {
		name     string
		out      string
		sent     int
		received int
		lossFree bool
	}{
		{"clean run", ok, 100, 100, true},
		{"lossy run", lossy, 1000, 990, false},
		{"refused", refused, 0, 0, false},
		{"cut off before its summary", progressOnly, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := ParseUclient(tt.out)
			if u.Sent != tt.sent || u.Received != tt.received {
				t.Fatalf("sent/received = %d/%d, want %d/%d", u.Sent, u.Received, tt.sent, tt.received)
			}
			if got := u.LossFree() == ""; got != tt.lossFree {
				t.Fatalf("LossFree() = %q, want loss-free %v", u.LossFree(), tt.lossFree)
			}
		})
	}
}
