set terminal pngcairo size 1000,600 noenhanced
set output 'bench/results/rekv_nano_mini/plots/fig5_target_rank_K4.png'
set title 'target rank of the rejected token: draft pythia-nano vs target pythia-mini, K=4, 734 rejections (NO-GO)'
set grid
set key below
set xlabel 'rank of the rejected token under the target (1 = its choice)'
set ylabel 'rejections'
set style fill solid 0.6
set boxwidth 0.7
set yrange [0:*]
set xrange [-0.5:4.5]
plot 'bench/results/rekv_nano_mini/plots/fig5_target_rank_K4.png.dat' using 1:3:xtic(2) with boxes lc rgb '#2171b5' notitle
