set terminal pngcairo size 1200,380 noenhanced
set output 'bench/results/rankkv_compare_h200_2.8b.png'
names = 'full snapkv rankkv pyramidkv pyramidkv-rankkv rankkv-dynamic rankkv-random rankkv-inverse pyramidkv-rankkv-random pyramidkv-rankkv-inverse'
set multiplot layout 1,2 title 'rankkv-compare: random-pythia-2.8b'
set xlabel 'average budget (positions per layer)'
set logscale x 2
set grid
set key outside right font ',9'
do for [j=1:8] { set linetype j + 8 lc j dt 2 }
set title 'time per output token'
set ylabel 'TPOT (ms)'
plot for [i=0:9] 'bench/results/rankkv_compare_h200_2.8b.png.dat' index i using 1:2 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'KV cache after the timing prompt'
set ylabel 'KV MB'
plot for [i=0:9] 'bench/results/rankkv_compare_h200_2.8b.png.dat' index i using 1:3 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
unset multiplot
