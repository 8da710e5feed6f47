module cross_loop_go

go 1.19
