set terminal pngcairo size 1000,600 noenhanced
set output 'bench/results/rekv_nano_mini/plots/fig6_rejection_position_K4.png'
set title 'where in the window drafts are rejected: draft pythia-nano vs target pythia-mini, K=4, 734 rejections (NO-GO)'
set grid
set key below
set xlabel 'window position of the first rejected token'
set ylabel 'rejections'
set style fill solid 0.6
set boxwidth 0.7
set yrange [0:*]
set xtics 1
set xrange [0.5:4.5]
plot 'bench/results/rekv_nano_mini/plots/fig6_rejection_position_K4.png.dat' using 1:2 with boxes lc rgb '#2171b5' notitle
